"""Search by meaning: a local sentence-embedding model, the background indexer that gives every
stored message and upload chunk its vector, and hybrid ranking (BM25 + vectors, fused by RRF)."""
