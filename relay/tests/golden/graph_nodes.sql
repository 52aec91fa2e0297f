-- The service graph's nodes over the whole history.
SELECT * FROM graph_nodes ORDER BY id
