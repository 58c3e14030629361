"""MITRE ATT&CK (Enterprise) tactics and the techniques tetrapipe's rules and Linux Sigma rules name.

Written for tetrapipe from ATT&CK's public facts (ids, names, the tactics a
technique belongs to), not copied from its data files; names as in ATT&CK
v15-v17. Only what the coverage matrix needs: a technique missing here is
still shown, by id, under the tactic its parent technique or the rule's tags
give. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

#: tactic id -> (name, tag a rule may carry for it); in ATT&CK's kill-chain order
TACTICS: dict[str, tuple[str, str]] = {
    "TA0043": ("Reconnaissance", "reconnaissance"),
    "TA0042": ("Resource Development", "resource-development"),
    "TA0001": ("Initial Access", "initial-access"),
    "TA0002": ("Execution", "execution"),
    "TA0003": ("Persistence", "persistence"),
    "TA0004": ("Privilege Escalation", "privilege-escalation"),
    "TA0005": ("Defense Evasion", "defense-evasion"),
    "TA0006": ("Credential Access", "credential-access"),
    "TA0007": ("Discovery", "discovery"),
    "TA0008": ("Lateral Movement", "lateral-movement"),
    "TA0009": ("Collection", "collection"),
    "TA0011": ("Command and Control", "command-and-control"),
    "TA0010": ("Exfiltration", "exfiltration"),
    "TA0040": ("Impact", "impact"),
}

_IA, _EX, _PE, _PR, _DE, _CA, _DI, _LM, _CO, _C2, _EF, _IM = (
    "TA0001", "TA0002", "TA0003", "TA0004", "TA0005", "TA0006", "TA0007", "TA0008", "TA0009", "TA0011", "TA0010",
    "TA0040",
)  # fmt: skip

#: technique id -> (name, tactic ids)
TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1003": ("OS Credential Dumping", (_CA,)),
    "T1003.008": ("/etc/passwd and /etc/shadow", (_CA,)),
    "T1014": ("Rootkit", (_DE,)),
    "T1016": ("System Network Configuration Discovery", (_DI,)),
    "T1018": ("Remote System Discovery", (_DI,)),
    "T1021.004": ("SSH", (_LM,)),
    "T1027": ("Obfuscated Files or Information", (_DE,)),
    "T1033": ("System Owner/User Discovery", (_DI,)),
    "T1036": ("Masquerading", (_DE,)),
    "T1036.005": ("Match Legitimate Name or Location", (_DE,)),
    "T1041": ("Exfiltration Over C2 Channel", (_EF,)),
    "T1046": ("Network Service Discovery", (_DI,)),
    "T1048": ("Exfiltration Over Alternative Protocol", (_EF,)),
    "T1049": ("System Network Connections Discovery", (_DI,)),
    "T1053.003": ("Cron", (_EX, _PE, _PR)),
    "T1055": ("Process Injection", (_DE, _PR)),
    "T1055.008": ("Ptrace System Calls", (_DE, _PR)),
    "T1057": ("Process Discovery", (_DI,)),
    "T1059": ("Command and Scripting Interpreter", (_EX,)),
    "T1059.004": ("Unix Shell", (_EX,)),
    "T1059.006": ("Python", (_EX,)),
    "T1068": ("Exploitation for Privilege Escalation", (_PR,)),
    "T1069.001": ("Local Groups", (_DI,)),
    "T1070.002": ("Clear Linux or Mac System Logs", (_DE,)),
    "T1070.003": ("Clear Command History", (_DE,)),
    "T1070.004": ("File Deletion", (_DE,)),
    "T1070.006": ("Timestomp", (_DE,)),
    "T1071": ("Application Layer Protocol", (_C2,)),
    "T1078": ("Valid Accounts", (_DE, _PE, _PR, _IA)),
    "T1082": ("System Information Discovery", (_DI,)),
    "T1083": ("File and Directory Discovery", (_DI,)),
    "T1087.001": ("Local Account", (_DI,)),
    "T1090": ("Proxy", (_C2,)),
    "T1095": ("Non-Application Layer Protocol", (_C2,)),
    "T1098": ("Account Manipulation", (_PE, _PR)),
    "T1098.004": ("SSH Authorized Keys", (_PE, _PR)),
    "T1105": ("Ingress Tool Transfer", (_C2,)),
    "T1110": ("Brute Force", (_CA,)),
    "T1113": ("Screen Capture", (_CO,)),
    "T1115": ("Clipboard Data", (_CO,)),
    "T1136": ("Create Account", (_PE,)),
    "T1136.001": ("Local Account", (_PE,)),
    "T1140": ("Deobfuscate/Decode Files or Information", (_DE,)),
    "T1190": ("Exploit Public-Facing Application", (_IA,)),
    "T1203": ("Exploitation for Client Execution", (_EX,)),
    "T1204.002": ("Malicious File", (_EX,)),
    "T1222.002": ("Linux and Mac File and Directory Permissions Modification", (_DE,)),
    "T1485": ("Data Destruction", (_IM,)),
    "T1486": ("Data Encrypted for Impact", (_IM,)),
    "T1489": ("Service Stop", (_IM,)),
    "T1496": ("Resource Hijacking", (_IM,)),
    "T1505.003": ("Web Shell", (_PE,)),
    "T1518.001": ("Security Software Discovery", (_DI,)),
    "T1528": ("Steal Application Access Token", (_CA,)),
    "T1529": ("System Shutdown/Reboot", (_IM,)),
    "T1543.002": ("Systemd Service", (_PE, _PR)),
    "T1547.006": ("Kernel Modules and Extensions", (_PE, _PR)),
    "T1548.001": ("Setuid and Setgid", (_PR, _DE)),
    "T1548.003": ("Sudo and Sudo Caching", (_PR, _DE)),
    "T1552.001": ("Credentials In Files", (_CA,)),
    "T1552.004": ("Private Keys", (_CA,)),
    "T1557": ("Adversary-in-the-Middle", (_CA, _CO)),
    "T1554": ("Compromise Host Software Binary", (_PE,)),
    "T1560.001": ("Archive via Utility", (_CO,)),
    "T1562.001": ("Disable or Modify Tools", (_DE,)),
    "T1562.004": ("Disable or Modify System Firewall", (_DE,)),
    "T1562.006": ("Indicator Blocking", (_DE,)),
    "T1564.001": ("Hidden Files and Directories", (_DE,)),
    "T1572": ("Protocol Tunneling", (_C2,)),
    "T1574.006": ("Dynamic Linker Hijacking", (_PE, _PR, _DE)),
    "T1609": ("Container Administration Command", (_EX,)),
    "T1611": ("Escape to Host", (_PR,)),
    "T1620": ("Reflective Code Loading", (_DE,)),
}

TAG_TACTIC = {tag: tid for tid, (_, tag) in TACTICS.items()}


def technique(tid: str) -> tuple[str | None, tuple[str, ...]]:
    """(name or None, tactic ids) of a technique; a sub-technique not listed takes its parent's tactics."""
    if tid in TECHNIQUES:
        return TECHNIQUES[tid]
    parent = TECHNIQUES.get(tid.split(".")[0])
    return None, parent[1] if parent else ()


__all__ = ["TACTICS", "TAG_TACTIC", "TECHNIQUES", "technique"]
