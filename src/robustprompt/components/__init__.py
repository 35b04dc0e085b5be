"""Small reusable modules shared by methods (context prompts, deep prompts, refiners, k-means)."""
