-- Process count per pod: executions, distinct binaries, still running, failed exits
SELECT namespace, pod, count(*) AS processes, count(DISTINCT process_binary) AS binaries,
       count(*) FILTER (WHERE exit_time IS NULL) AS not_exited,
       count(*) FILTER (WHERE exit_status IS NOT NULL OR exit_signal IS NOT NULL) AS failed,
       min(start_time) AS first_start, max(start_time) AS last_start
FROM processes
WHERE pod IS NOT NULL
GROUP BY ALL
ORDER BY processes DESC
