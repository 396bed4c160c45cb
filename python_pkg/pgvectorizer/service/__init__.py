"""The embedding queue service: an OpenAI-compatible POST /v1/embeddings in front of a task
store, served by GPU workers that pull tasks over HTTP (pgvectorizer.gpu_worker)."""
