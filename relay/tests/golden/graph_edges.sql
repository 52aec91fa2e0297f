-- The service graph's edges over the whole history (no time condition).
SELECT * FROM graph_edges ORDER BY id
