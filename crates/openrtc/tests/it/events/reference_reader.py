"""Reads an openrtc event stream file as a tool written for the Python reference's metrics
stream would: by the envelope's field names and types alone, with the standard library.

Every line must be one JSON object holding exactly the envelope's five fields:
schema_version (the integer 2), kind ("snapshot" or "event"), seq (an integer, not a
boolean, strictly increasing), wall_time_unix (a number of seconds, not a boolean) and
payload (an object; an event's payload names it under "event").

Usage: python3 reference_reader.py STREAM_FILE
Prints the number of lines read; exits with status 1 and the reason on the first bad line.
"""

import json
import sys

FIELDS = {"schema_version", "kind", "seq", "wall_time_unix", "payload"}


def is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(record, previous_seq):
    if not isinstance(record, dict):
        return "not a JSON object"
    if set(record) != FIELDS:
        return "fields are %s" % sorted(record)
    if record["schema_version"] != 2 or not is_integer(record["schema_version"]):
        return "schema_version is %r" % (record["schema_version"],)
    if record["kind"] not in ("snapshot", "event"):
        return "kind is %r" % (record["kind"],)
    if not is_integer(record["seq"]):
        return "seq is %r" % (record["seq"],)
    if record["seq"] <= previous_seq:
        return "seq %d does not follow %d" % (record["seq"], previous_seq)
    if not is_number(record["wall_time_unix"]):
        return "wall_time_unix is %r" % (record["wall_time_unix"],)
    payload = record["payload"]
    if not isinstance(payload, dict):
        return "payload is not an object"
    if record["kind"] == "event" and not isinstance(payload.get("event"), str):
        return "an event payload without its name"
    return None


def main(path):
    previous_seq = 0
    count = 0
    with open(path, encoding="utf-8") as stream:
        for number, text in enumerate(stream, start=1):
            try:
                record = json.loads(text)
            except ValueError as error:
                print("line %d is not JSON: %s" % (number, error))
                return 1
            why = problem(record, previous_seq)
            if why is not None:
                print("line %d: %s" % (number, why))
                return 1
            previous_seq = record["seq"]
            count += 1
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
