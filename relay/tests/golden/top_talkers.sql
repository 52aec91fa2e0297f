-- Top talkers: bytes both ways by the address that opened each connection.
-- Every row of a connection carries its running totals, so a connection
-- counts once, with its largest totals, however many rows and observation
-- points saw it (a reply row names the opener as its destination).
WITH connections AS (
    SELECT CASE WHEN is_reply THEN destination_ip ELSE source_ip END AS client,
           CASE WHEN is_reply THEN destination_port ELSE source_port END AS client_port,
           CASE WHEN is_reply THEN source_ip ELSE destination_ip END AS server,
           CASE WHEN is_reply THEN source_port ELSE destination_port END AS server_port,
           protocol,
           max(fwd_bytes) + max(rev_bytes) AS bytes
    FROM flows
    WHERE fwd_bytes IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
)
SELECT client AS source_ip, sum(bytes) AS bytes
FROM connections
GROUP BY 1
ORDER BY bytes DESC, source_ip
LIMIT 3
