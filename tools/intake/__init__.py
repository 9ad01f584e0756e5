"""Reading a request: the offline request reader, the chat-model intake, and the search queries a
subject expands to."""
