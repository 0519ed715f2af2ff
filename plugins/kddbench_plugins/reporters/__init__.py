"""Reporter registrations (implementations beside this file)."""
from kddbench import ReporterSpec, hookimpl


@hookimpl
def kddbench_reporters():
    yield ReporterSpec("jsonl", "kddbench_plugins.reporters.jsonl:jsonl",
                       "append every finished record to <report dir>/records.jsonl")
