-- Access to credential and system files (/etc/passwd, /etc/shadow, sudoers, ssh keys) by process and pod
SELECT time, namespace, pod, process_binary, arguments, function_name, file_path, file_access, action,
       policy_name, exec_id
FROM events
WHERE file_path IS NOT NULL
  AND (regexp_matches(file_path, '^/?etc/(passwd|shadow|gshadow|group|sudoers)')
       OR file_path LIKE '%/.ssh/%' OR regexp_matches(file_path, '^/?etc/sudoers\.d/'))
ORDER BY time
