-- Outbound connections per workload and destination (tcp_connect kprobes and enterprise connect events)
SELECT coalesce(namespace, '(host)') AS namespace, coalesce(workload, pod, process_name) AS workload,
       process_binary, daddr, dport, protocol, count(*) AS connections, min(time) AS first_seen,
       max(time) AS last_seen
FROM events
WHERE daddr IS NOT NULL
  AND (kind = 'process_connect' OR function_name IN ('tcp_connect', 'security_socket_connect'))
GROUP BY ALL
ORDER BY connections DESC
