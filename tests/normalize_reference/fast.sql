WITH k AS (
    SELECT _i, source_offset, raw, regexp_extract(raw, '^\{"([a-z_]+)": ?\{', 1) AS kind FROM batch
),
r AS (
    SELECT _i, source_offset, kind, regexp_replace(raw, '^\{"[a-z_]+":', '{"__event__":') AS ev
    FROM k WHERE list_contains(['process_exec', 'process_exit', 'process_kprobe', 'process_tracepoint', 'process_loader', 'process_uprobe', 'process_throttle', 'process_lsm', 'process_usdt', 'test', 'rate_limit_info', 'process_connect', 'process_close', 'process_listen', 'process_sock_stats', 'process_dns', 'process_accept'], kind)
),
x AS (
    SELECT _i, source_offset, kind,
        json_extract_string(ev, ['$.__event__.process.exec_id', '$.__event__.process.parent_exec_id', '$.__event__.parent.exec_id', '$.__event__.process.pid', '$.__event__.process.tid', '$.__event__.process.uid', '$.__event__.process.process_credentials.euid', '$.__event__.process.auid', '$.__event__.process.binary', '$.__event__.process.arguments', '$.__event__.process.cwd', '$.__event__.process.flags', '$.__event__.process.start_time', '$.__event__.process.in_init_tree', '$.__event__.process.binary_properties.setuid', '$.__event__.process.pod.namespace', '$.__event__.process.pod.name', '$.__event__.process.pod.uid', '$.__event__.process.pod.workload', '$.__event__.process.pod.workload_kind', '$.__event__.process.pod.container.id', '$.__event__.process.pod.container.name', '$.__event__.process.pod.container.image.name', '$.__event__.process.pod.container.image.id', '$.__event__.process.pod.container.start_time', '$.__event__.process.pod.container.pid', '$.__event__.process.pod.container.security_context.privileged', '$.__event__.parent.binary', '$.__event__.parent.arguments', '$.__event__.parent.pid', '$.__event__.parent.start_time', '$.__event__.function_name', '$.__event__.subsys', '$.__event__.event', '$.__event__.symbol', '$.__event__.provider', '$.__event__.name', '$.__event__.path', '$.__event__.policy_name', '$.__event__.action', '$.__event__.return_action', '$.__event__.message', '$.__event__.status', '$.__event__.signal', '$.__event__.type', '$.__event__.cgroup', '$.__event__.number_of_dropped_process_events', '$.__event__.source_ip', '$.__event__.source_port', '$.__event__.destination_ip', '$.__event__.destination_port', '$.__event__.protocol', '$.__event__.ip', '$.__event__.port', '$.__event__.process.pod.pod_labels', '$.__event__.process.cap.effective', '$.__event__.process.ns', '$.__event__.process.binary_properties.privileges_changed', '$.__event__.tags', '$.__event__.args', '$.__event__.return', '$.__event__.ancestors', '$.__event__.args[0]', '$.__event__.ancestors[0]', '$.__event__.process.cap.effective[0]', '$.__event__.process.binary_properties.privileges_changed[0]', '$.__event__.tags[0]', '$.__event__.process.ns.uts.is_host', '$.__event__.process.ns.ipc.is_host', '$.__event__.process.ns.mnt.is_host', '$.__event__.process.ns.pid.is_host', '$.__event__.process.ns.pid_for_children.is_host', '$.__event__.process.ns.net.is_host', '$.__event__.process.ns.time.is_host', '$.__event__.process.ns.time_for_children.is_host', '$.__event__.process.ns.cgroup.is_host', '$.__event__.process.ns.user.is_host'] || ['$.node_name', '$.time', '$.cluster_name']) AS s,
        json_keys(ev, ['$', '$.__event__', '$.__event__.process', '$.__event__.process.pod', '$.__event__.process.pod.container', '$.__event__.process.pod.container.image', '$.__event__.process.pod.container.security_context', '$.__event__.process.process_credentials', '$.__event__.process.binary_properties', '$.__event__.process.cap', '$.__event__.process.ns', '$.__event__.parent', '$.__event__.process.pod.pod_labels', '$.__event__.return']) AS shape_keys,
        CASE WHEN list_contains(['process_throttle', 'rate_limit_info', 'test'], kind) THEN CAST(json_extract(ev, '$.__event__') AS VARCHAR) END AS body,
        NULL::VARCHAR AS reject0
    FROM r
),
y AS (
    SELECT *,
        CASE WHEN starts_with(s[60], '[') AND (s[60] = '[]' OR s[63] IS NOT NULL) THEN s[60] END AS args_t,
        CASE WHEN starts_with(s[62], '[') AND (s[62] = '[]' OR s[64] IS NOT NULL) THEN s[62] END AS anc_t,
        CASE WHEN starts_with(s[56], '[') AND (s[56] = '[]' OR s[65] IS NOT NULL) THEN s[56] END AS cap_t,
        CASE WHEN starts_with(s[58], '[') AND (s[58] = '[]' OR s[66] IS NOT NULL) THEN s[58] END AS priv_t,
        CASE WHEN starts_with(s[59], '[') AND (s[59] = '[]' OR s[67] IS NOT NULL) THEN s[59] END AS tags_t,
        CASE WHEN starts_with(s[57], '{') AND json_valid(s[57]) THEN s[57] END AS ns_t,
        CASE WHEN starts_with(s[55], '{') AND json_valid(s[55]) THEN s[55] END AS labels_t,
        CASE WHEN starts_with(s[61], '{') AND json_valid(s[61]) THEN s[61] END AS ret_t
    FROM x
),
y2 AS (
    SELECT *,
        CASE WHEN args_t IS NOT NULL THEN json_extract_string(args_t, ['$[0].file_arg.path', '$[0].path_arg.path', '$[0].linux_binprm_arg.path', '$[0].file_arg.permission', '$[0].path_arg.permission', '$[0].linux_binprm_arg.permission', '$[0].string_arg', '$[0].int_arg', '$[0].uint_arg', '$[0].sock_arg.family', '$[0].sock_arg.protocol', '$[0].sock_arg.saddr', '$[0].sock_arg.sport', '$[0].sock_arg.daddr', '$[0].sock_arg.dport', '$[0].sock_arg.state', '$[0].skb_arg.family', '$[0].skb_arg.protocol', '$[0].skb_arg.saddr', '$[0].skb_arg.sport', '$[0].skb_arg.daddr', '$[0].skb_arg.dport', '$[0].sockaddr_arg.family', '$[0].sockaddr_arg.addr', '$[0].sockaddr_arg.port', '$[1].file_arg.path', '$[1].path_arg.path', '$[1].linux_binprm_arg.path', '$[1].file_arg.permission', '$[1].path_arg.permission', '$[1].linux_binprm_arg.permission', '$[1].string_arg', '$[1].int_arg', '$[1].uint_arg', '$[1].sock_arg.family', '$[1].sock_arg.protocol', '$[1].sock_arg.saddr', '$[1].sock_arg.sport', '$[1].sock_arg.daddr', '$[1].sock_arg.dport', '$[1].sock_arg.state', '$[1].skb_arg.family', '$[1].skb_arg.protocol', '$[1].skb_arg.saddr', '$[1].skb_arg.sport', '$[1].skb_arg.daddr', '$[1].skb_arg.dport', '$[1].sockaddr_arg.family', '$[1].sockaddr_arg.addr', '$[1].sockaddr_arg.port', '$[2].file_arg.path', '$[2].path_arg.path', '$[2].linux_binprm_arg.path', '$[2].file_arg.permission', '$[2].path_arg.permission', '$[2].linux_binprm_arg.permission', '$[2].string_arg', '$[2].int_arg', '$[2].uint_arg', '$[2].sock_arg.family', '$[2].sock_arg.protocol', '$[2].sock_arg.saddr', '$[2].sock_arg.sport', '$[2].sock_arg.daddr', '$[2].sock_arg.dport', '$[2].sock_arg.state', '$[2].skb_arg.family', '$[2].skb_arg.protocol', '$[2].skb_arg.saddr', '$[2].skb_arg.sport', '$[2].skb_arg.daddr', '$[2].skb_arg.dport', '$[2].sockaddr_arg.family', '$[2].sockaddr_arg.addr', '$[2].sockaddr_arg.port', '$[3].file_arg.path', '$[3].path_arg.path', '$[3].linux_binprm_arg.path', '$[3].file_arg.permission', '$[3].path_arg.permission', '$[3].linux_binprm_arg.permission', '$[3].string_arg', '$[3].int_arg', '$[3].uint_arg', '$[3].sock_arg.family', '$[3].sock_arg.protocol', '$[3].sock_arg.saddr', '$[3].sock_arg.sport', '$[3].sock_arg.daddr', '$[3].sock_arg.dport', '$[3].sock_arg.state', '$[3].skb_arg.family', '$[3].skb_arg.protocol', '$[3].skb_arg.saddr', '$[3].skb_arg.sport', '$[3].skb_arg.daddr', '$[3].skb_arg.dport', '$[3].sockaddr_arg.family', '$[3].sockaddr_arg.addr', '$[3].sockaddr_arg.port', '$[4]']) END AS a,
        coalesce(s[32], CASE WHEN s[33] IS NOT NULL THEN s[33] || '/' || coalesce(s[34], '') END, s[35], CASE WHEN s[36] IS NOT NULL THEN s[36] || ':' || coalesce(s[37], '') END) AS fn
    FROM y
),
c AS (
    SELECT *, to_json(struct_pack(
        kind := kind,
        ks := shape_keys,
        empty := CASE WHEN labels_t = '{}' THEN '1' ELSE '0' END || CASE WHEN ns_t = '{}' THEN '1' ELSE '0' END
                 || CASE WHEN ret_t = '{}' THEN '1' ELSE '0' END,
        ak := CASE WHEN args_t IS NOT NULL THEN json_keys(args_t, '$[*]') END,
        av := CASE WHEN args_t IS NOT NULL THEN json_keys(args_t, '$[*].*') END,
        ab := CASE WHEN args_t IS NOT NULL THEN length(args_t) - length(replace(args_t, '{', '')) END,
        rk := CASE WHEN ret_t IS NOT NULL THEN json_keys('[' || ret_t || ']', '$[*]') END,
        rv := CASE WHEN ret_t IS NOT NULL THEN json_keys('[' || ret_t || ']', '$[*].*') END,
        rb := CASE WHEN ret_t IS NOT NULL THEN length(ret_t) - length(replace(ret_t, '{', '')) END,
        anc := CASE WHEN anc_t IS NOT NULL THEN json_keys(anc_t, '$[*]') END,
        nsk := CASE WHEN ns_t IS NOT NULL THEN json_keys(ns_t, '$.*') END)) AS shape
    FROM y2
),
z AS (
    SELECT *, coalesce(CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].file_arg.path')[1], json_extract_string(args_t, '$[*].path_arg.path')[1], json_extract_string(args_t, '$[*].linux_binprm_arg.path')[1]) ELSE coalesce(a[1], a[26], a[51], a[76], a[2], a[27], a[52], a[77], a[3], a[28], a[53], a[78]) END, CASE WHEN fn SIMILAR TO '.*sys_(openat|openat2|unlinkat|renameat|renameat2|mkdirat|fchmodat|fchownat)' THEN a[32] WHEN fn SIMILAR TO '.*sys_(open|creat|unlink|rename|truncate|chmod|chown|mkdir|rmdir)' THEN a[7] WHEN kind = 'process_tracepoint' AND fn SIMILAR TO 'syscalls/sys_enter_(open|openat|openat2|creat|unlink|unlinkat|rename|renameat|renameat2|mkdir|mkdirat|rmdir|chmod|fchmodat|chown|fchownat|lchown|truncate|execve|execveat)' THEN CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].string_arg')[1]) ELSE coalesce(a[7], a[32], a[57], a[82]) END END) AS file_path,
        coalesce(reject0, CASE WHEN s[79] IS NOT NULL AND (TRY_CAST(s[79] AS TIMESTAMP_NS) + (CASE WHEN regexp_matches(s[79], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[79] AS TIMESTAMPTZ) AS TIMESTAMP) END - TRY_CAST(s[79] AS TIMESTAMP))) IS NULL
                               THEN 'not a Tetragon event: bad time ' || CASE WHEN length(s[79]) > 100 THEN left(s[79], 100) || '... (' || length(s[79]) || ' characters)' ELSE s[79] END END) AS reject
    FROM c
)
SELECT
    _i,
    shape,
    CASE WHEN reject IS NULL THEN md5(concat_ws('|', kind, coalesce(s[78], ''),
        coalesce(CAST((TRY_CAST(s[79] AS TIMESTAMP_NS) + (CASE WHEN regexp_matches(s[79], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[79] AS TIMESTAMPTZ) AS TIMESTAMP) END - TRY_CAST(s[79] AS TIMESTAMP))) AS VARCHAR), ''), coalesce(s[1], ''),
        coalesce(fn, ''), coalesce(s[39], ''), coalesce(args_t, ''),
        coalesce(s[43], ''), coalesce(s[44], ''), coalesce(body, '')))
    END AS event_id,
    CASE WHEN regexp_matches(s[79], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[79] AS TIMESTAMPTZ) AS TIMESTAMP) END AS time,
    epoch_ns((TRY_CAST(s[79] AS TIMESTAMP_NS) + (CASE WHEN regexp_matches(s[79], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[79] AS TIMESTAMPTZ) AS TIMESTAMP) END - TRY_CAST(s[79] AS TIMESTAMP)))) AS time_ns,
    kind,
    s[78] AS node_name,
    s[80] AS cluster_name,
    s[1] AS exec_id,
    coalesce(s[2], s[3]) AS parent_exec_id,
    TRY_CAST(s[4] AS BIGINT) AS pid,
    TRY_CAST(s[5] AS BIGINT) AS tid,
    TRY_CAST(s[6] AS BIGINT) AS uid,
    TRY_CAST(s[7] AS BIGINT) AS euid,
    TRY_CAST(s[8] AS BIGINT) AS auid,
    s[9] AS process_binary,
    CASE WHEN s[9] IS NOT NULL THEN parse_filename(s[9], 'forward_slash') END AS process_name,
    s[10] AS arguments,
    s[11] AS cwd,
    s[12] AS flags,
    CASE WHEN regexp_matches(s[13], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[13] AS TIMESTAMPTZ) AS TIMESTAMP) END AS process_start_time,
    TRY_CAST(s[14] AS BOOLEAN) AS in_init_tree,
    TRY_CAST(CAST(cap_t AS JSON) AS VARCHAR[]) AS cap_effective,
    CASE WHEN ns_t IS NOT NULL THEN list_filter([CASE WHEN TRY_CAST(s[68] AS BOOLEAN) THEN 'uts' END, CASE WHEN TRY_CAST(s[69] AS BOOLEAN) THEN 'ipc' END, CASE WHEN TRY_CAST(s[70] AS BOOLEAN) THEN 'mnt' END, CASE WHEN TRY_CAST(s[71] AS BOOLEAN) THEN 'pid' END, CASE WHEN TRY_CAST(s[72] AS BOOLEAN) THEN 'pid_for_children' END, CASE WHEN TRY_CAST(s[73] AS BOOLEAN) THEN 'net' END, CASE WHEN TRY_CAST(s[74] AS BOOLEAN) THEN 'time' END, CASE WHEN TRY_CAST(s[75] AS BOOLEAN) THEN 'time_for_children' END, CASE WHEN TRY_CAST(s[76] AS BOOLEAN) THEN 'cgroup' END, CASE WHEN TRY_CAST(s[77] AS BOOLEAN) THEN 'user' END], lambda n: n IS NOT NULL) END AS host_namespaces,
    TRY_CAST(s[15] AS BIGINT) AS binary_setuid,
    TRY_CAST(CAST(priv_t AS JSON) AS VARCHAR[]) AS privileges_changed,
    s[16] AS namespace,
    s[17] AS pod,
    s[18] AS pod_uid,
    TRY_CAST(CAST(labels_t AS JSON) AS MAP(VARCHAR, VARCHAR)) AS pod_labels,
    s[19] AS workload,
    s[20] AS workload_kind,
    s[21] AS container_id,
    s[22] AS container_name,
    s[23] AS image,
    s[24] AS image_id,
    CASE WHEN regexp_matches(s[25], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[25] AS TIMESTAMPTZ) AS TIMESTAMP) END AS container_start_time,
    TRY_CAST(s[26] AS BIGINT) AS container_pid,
    TRY_CAST(s[27] AS BOOLEAN) AS privileged,
    s[28] AS parent_binary,
    s[29] AS parent_arguments,
    TRY_CAST(s[30] AS BIGINT) AS parent_pid,
    CASE WHEN regexp_matches(s[31], '[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$') THEN NULL ELSE TRY_CAST(TRY_CAST(s[31] AS TIMESTAMPTZ) AS TIMESTAMP) END AS parent_start_time,
    CASE WHEN anc_t IS NOT NULL THEN json_extract_string(anc_t, '$[*].exec_id') END AS ancestor_exec_ids,
    CASE WHEN anc_t IS NOT NULL THEN json_extract_string(anc_t, '$[*].binary') END AS ancestor_binaries,
    fn AS function_name,
    CASE WHEN kind IN ('process_uprobe', 'process_usdt', 'process_loader') THEN s[38] END AS hook_path,
    s[39] AS policy_name,
    s[40] AS action,
    s[41] AS return_action,
    s[42] AS message,
    TRY_CAST(CAST(tags_t AS JSON) AS VARCHAR[]) AS tags,
    args_t AS args,
    ret_t AS return_value,
    file_path,
    CASE WHEN file_path IS NULL THEN NULL
        WHEN fn IN ('security_file_permission', 'file_permission') THEN
            CASE WHEN TRY_CAST(a[33] AS BIGINT) & 10 != 0 THEN 'write' WHEN TRY_CAST(a[33] AS BIGINT) & 4 != 0 THEN 'read'
                 WHEN TRY_CAST(a[33] AS BIGINT) & 1 != 0 THEN 'exec' END
        WHEN fn LIKE '%truncate%' THEN 'truncate'
        WHEN fn LIKE '%unlink%' OR fn LIKE '%rmdir%' THEN 'unlink'
        WHEN fn LIKE '%rename%' THEN 'rename'
        WHEN fn LIKE '%mmap%' THEN 'mmap'
        WHEN fn LIKE '%chmod%' THEN 'chmod'
        WHEN fn LIKE '%chown%' THEN 'chown'
        WHEN fn LIKE '%bprm%' OR fn LIKE '%exec%' THEN 'exec'
        WHEN fn SIMILAR TO '.*sys_(write|pwrite64|writev|pwritev)' THEN 'write'
        WHEN fn SIMILAR TO '.*sys_(read|pread64|readv|preadv)' THEN 'read'
        WHEN fn LIKE '%open%' OR fn = 'fd_install' THEN
            CASE WHEN coalesce(TRY_CAST(CASE WHEN fn SIMILAR TO '.*sys_(openat|openat2)' THEN a[58] WHEN fn SIMILAR TO '.*sys_open' THEN a[33] END AS BIGINT), 0) & 1603 != 0 THEN 'write' ELSE 'open' END
        ELSE 'access' END AS file_access,
    CASE WHEN file_path IS NOT NULL
         THEN CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].file_arg.permission')[1], json_extract_string(args_t, '$[*].path_arg.permission')[1], json_extract_string(args_t, '$[*].linux_binprm_arg.permission')[1]) ELSE coalesce(a[4], a[29], a[54], a[79], a[5], a[30], a[55], a[80], a[6], a[31], a[56], a[81]) END END
        AS file_permission,
    CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.family')[1], json_extract_string(args_t, '$[*].skb_arg.family')[1], json_extract_string(args_t, '$[*].sockaddr_arg.family')[1]) ELSE coalesce(a[10], a[35], a[60], a[85], a[17], a[42], a[67], a[92], a[23], a[48], a[73], a[98]) END AS sock_family,
    coalesce(CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.protocol')[1], json_extract_string(args_t, '$[*].skb_arg.protocol')[1]) ELSE coalesce(a[11], a[36], a[61], a[86], a[18], a[43], a[68], a[93]) END, s[52]) AS protocol,
    coalesce(CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.saddr')[1], json_extract_string(args_t, '$[*].skb_arg.saddr')[1]) ELSE coalesce(a[12], a[37], a[62], a[87], a[19], a[44], a[69], a[94]) END, s[48],
             CASE WHEN kind = 'process_listen' THEN s[53] END) AS saddr,
    TRY_CAST(coalesce(CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.sport')[1], json_extract_string(args_t, '$[*].skb_arg.sport')[1]) ELSE coalesce(a[13], a[38], a[63], a[88], a[20], a[45], a[70], a[95]) END, s[49], CASE WHEN kind = 'process_listen' THEN s[54] END) AS BIGINT) AS sport,
    coalesce(CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.daddr')[1], json_extract_string(args_t, '$[*].skb_arg.daddr')[1], json_extract_string(args_t, '$[*].sockaddr_arg.addr')[1]) ELSE coalesce(a[14], a[39], a[64], a[89], a[21], a[46], a[71], a[96], a[24], a[49], a[74], a[99]) END, s[50]) AS daddr,
    TRY_CAST(coalesce(CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.dport')[1], json_extract_string(args_t, '$[*].skb_arg.dport')[1], json_extract_string(args_t, '$[*].sockaddr_arg.port')[1]) ELSE coalesce(a[15], a[40], a[65], a[90], a[22], a[47], a[72], a[97], a[25], a[50], a[75], a[100]) END, s[51]) AS BIGINT) AS dport,
    CASE WHEN a[101] IS NOT NULL THEN coalesce(json_extract_string(args_t, '$[*].sock_arg.state')[1]) ELSE coalesce(a[16], a[41], a[66], a[91]) END AS sock_state,
    NULL::VARCHAR AS tls_version,
    NULL::VARCHAR AS tls_cipher,
    NULL::BIGINT AS tls_cipher_code,
    NULL::VARCHAR AS tls_sni,
    CASE WHEN kind = 'process_exit' THEN TRY_CAST(s[43] AS BIGINT) END AS exit_status,
    CASE WHEN kind = 'process_exit' THEN s[44] END AS exit_signal,
    CASE WHEN kind = 'process_throttle' THEN s[45] END AS throttle_type,
    CASE WHEN kind = 'process_throttle' THEN s[46] END AS cgroup,
    TRY_CAST(s[47] AS BIGINT) AS dropped_events,
    NULL::VARCHAR[] AS warnings,
    NULL::VARCHAR AS source,
    source_offset,
    reject
FROM z
