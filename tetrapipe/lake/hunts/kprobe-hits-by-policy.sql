-- Hook events (kprobe, tracepoint, uprobe, LSM) per TracingPolicy, function and action
SELECT coalesce(policy_name, '(unnamed)') AS policy_name, kind, function_name, action,
       count(*) AS events, count(DISTINCT exec_id) AS processes, min(time) AS first_seen, max(time) AS last_seen
FROM events
WHERE kind IN ('process_kprobe', 'process_tracepoint', 'process_uprobe', 'process_lsm', 'process_usdt')
GROUP BY ALL
ORDER BY events DESC
