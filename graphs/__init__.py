"""The LangGraph job graph: state schema, specialists as nodes, routing, gates and the critic."""
