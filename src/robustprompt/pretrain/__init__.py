"""Pretraining the embedded small CLIP (`robustprompt pretrain`) on offline captioned data."""
