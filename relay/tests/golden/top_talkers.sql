-- Top talkers: bytes both ways by source address.
SELECT source_ip, sum(coalesce(fwd_bytes, 0) + coalesce(rev_bytes, 0)) AS bytes
FROM flows
GROUP BY source_ip
ORDER BY bytes DESC, source_ip
LIMIT 3
