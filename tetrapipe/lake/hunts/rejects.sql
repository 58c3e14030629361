-- Lines that were not Tetragon events: where they were and why
SELECT source, source_offset AS line, reason, left(raw, 120) AS start_of_line, time AS rejected_at
FROM rejects
ORDER BY source, source_offset
