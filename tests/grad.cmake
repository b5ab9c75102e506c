# grad tests
