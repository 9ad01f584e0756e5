"""researcher: moved to tools/research/harvest.py (a step kept apart so history follows the file);
the next commit splits the node back out of it."""

from tools.research.harvest import gather_documents, plan_sources  # noqa: F401
