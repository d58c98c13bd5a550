"""From a query to ranked hits: filters, keywords, signals, fusion, ranking, feedback and reranking."""
