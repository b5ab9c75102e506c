# chat tests
