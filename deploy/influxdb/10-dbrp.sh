#!/bin/bash
# Maps the InfluxQL database/retention policy heatstream/autogen onto the bucket.
#
# InfluxDB 2.x stores data in buckets and answers InfluxQL (/query, the 1.x API) only
# for a database + retention policy that a DBRP mapping points at a bucket. Our
# dashboards and analysts' queries are InfluxQL (the one language 1.x, 2.x and 3.x all
# answer), so the mapping must exist before Grafana's first query.
#
# The influxdb image runs this once, on first start (empty volume), right after
# DOCKER_INFLUXDB_INIT_MODE=setup has created the org, bucket and admin token, with
# INFLUX_HOST pointing at the temporary setup server and DOCKER_INFLUXDB_INIT_BUCKET_ID
# exported. A failure here fails the setup and the container, which is what we want.
set -euo pipefail

database="${HEATSTREAM_DBRP_DATABASE:-heatstream}"
retention_policy="${HEATSTREAM_DBRP_RETENTION_POLICY:-autogen}"

# Through the environment rather than --token, so the token never shows in `ps`.
export INFLUX_TOKEN="${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN:?DOCKER_INFLUXDB_INIT_ADMIN_TOKEN is required}"
export INFLUX_ORG="${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is required}"

influx v1 dbrp create \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?DOCKER_INFLUXDB_INIT_BUCKET_ID is exported by the image}" \
    --db "${database}" \
    --rp "${retention_policy}" \
    --default

echo "heatstream: InfluxQL ${database}/${retention_policy} -> bucket ${DOCKER_INFLUXDB_INIT_BUCKET:-?} (${DOCKER_INFLUXDB_INIT_BUCKET_ID})"
