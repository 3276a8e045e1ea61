"""Wiring only: the app object, telemetry set-up and the blueprints."""

import azure.durable_functions as df

from functions import api, fastdecode, ingest, player_entity, reminders, summaries
from shared import telemetry

telemetry.configure()
# Before the first trigger batch is decoded: the worker's EnqueuedTimeUtc parse, guarded (docs/platform.md).
fastdecode.install()

app = df.DFApp()
app.register_functions(ingest.bp)
app.register_functions(player_entity.bp)
app.register_functions(api.bp)
app.register_functions(reminders.bp)
app.register_functions(summaries.bp)
