-- Baseline of new-binary-in-image: each image's binaries, when first run, and whether learned (the image's first hour)
WITH runs AS (
    SELECT image, process_binary, time FROM events WHERE kind = 'process_exec' AND container_id IS NOT NULL
), images AS (
    SELECT image, min(time) AS image_first_seen FROM runs GROUP BY image
)
SELECT r.image, r.process_binary, min(r.time) AS first_run, count(*) AS runs,
       min(r.time) < any_value(i.image_first_seen) + INTERVAL 1 HOUR AS learned
FROM runs r JOIN images i USING (image)
GROUP BY r.image, r.process_binary
ORDER BY r.image, first_run
