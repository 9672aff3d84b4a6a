"""Recipes: the typed schema, YAML loading with positions, inheritance, overrides and matrix expansion."""

from harness.recipe.loader import load_recipes, recipe_to_dict
from harness.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipes", "recipe_to_dict"]
