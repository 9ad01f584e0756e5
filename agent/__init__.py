"""Front doors: the CLI (and later chat, Slack, HTTP and Python APIs) over one service."""
