"""cgd-harness: declarative Critique-Guided Distillation experiments."""
