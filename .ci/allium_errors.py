"""Reads `allium check` output (one JSON document per spec file) from stdin,
prints every error and warning as file:line:col, and exits 1 if any error."""
import json
import sys

text = sys.stdin.read()
decoder = json.JSONDecoder()
position, errors, warnings = 0, 0, 0
while True:
    while position < len(text) and text[position].isspace():
        position += 1
    if position >= len(text):
        break
    document, position = decoder.raw_decode(text, position)
    for diagnostic in document.get("diagnostics", []):
        severity = diagnostic.get("severity")
        if severity not in ("error", "warning"):
            continue
        location = diagnostic.get("location", {})
        print(f"{location.get('file', document.get('spec_file'))}:{location.get('line', '?')}:"
              f"{location.get('col', '?')}: {severity}: {diagnostic.get('message')}")
        errors += severity == "error"
        warnings += severity == "warning"
print(f"allium check: {errors} errors, {warnings} warnings")
sys.exit(1 if errors else 0)
