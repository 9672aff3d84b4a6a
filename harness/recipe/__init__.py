"""Recipes: the typed schema, YAML loading with positions, inheritance, overrides and matrix expansion."""

from harness.recipe.loader import Locator, load_recipes, locate, locator_of, recipe_to_dict
from harness.recipe.schema import Recipe

__all__ = ["Locator", "Recipe", "load_recipes", "locate", "locator_of", "recipe_to_dict"]
