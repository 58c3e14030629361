-- Most executed binaries, with the pods and nodes they ran on
SELECT process_binary, count(*) AS execs, count(DISTINCT pod) AS pods, count(DISTINCT node_name) AS nodes,
       min(time) AS first_seen, max(time) AS last_seen
FROM events
WHERE kind = 'process_exec'
GROUP BY ALL
ORDER BY execs DESC
