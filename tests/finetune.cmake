# finetune tests
