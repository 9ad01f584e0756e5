"""Research: which sources to search, with which queries and quotas (planning), and the search, fetch
and storage of documents per source plan (harvest). Typed inputs only; the researcher node builds them
from the job spec and the run settings."""
