"""Where prompts come from: readers per source kind (`sources`) and one processor per known dataset (`processors`)."""
