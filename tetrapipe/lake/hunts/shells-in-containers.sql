-- Shells started inside containers, with how long after the container started
SELECT time, node_name, namespace, pod, container_name, process_binary, arguments, parent_binary,
       in_init_tree, process_start_time - container_start_time AS since_container_start, exec_id
FROM events
WHERE kind = 'process_exec'
  AND container_id IS NOT NULL
  AND process_name IN ('sh', 'bash', 'dash', 'zsh', 'ash', 'ksh', 'csh', 'tcsh', 'fish', 'busybox')
ORDER BY since_container_start DESC
