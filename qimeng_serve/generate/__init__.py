"""Stage 1 generators: the offline planner and the LLM path."""
