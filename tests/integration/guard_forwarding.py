#!/usr/bin/env python3
"""Every virtual of an SDK interface is forwarded by its guard wrapper.

core/src/host/plugin_guard.h wraps each plugin object so that an exception
or a crash names the plugin. A virtual the wrapper does not override silently
runs the SDK's default instead of the plugin's own (issue 22: grow() was
missed once). This test reads the SDK headers and the guard and fails naming
each virtual a wrapper does not override.

usage: guard_forwarding.py SOURCE_DIR
"""
import re
import sys
from pathlib import Path

# (SDK header, interface, guard class in plugin_guard.h)
PAIRS = [
    ("sdk/include/learndrop/cache.h", "BatchReader", "Reader"),
    ("sdk/include/learndrop/cache.h", "FeatureCache", "Cache"),
    ("sdk/include/learndrop/dataset.h", "Dataset", "DatasetGuard"),
    ("sdk/include/learndrop/policy.h", "DropPolicy", "Policy"),
]


def class_body(text: str, name: str, path: str) -> str:
    m = re.search(r"\bclass\s+(?:\w+\s+)*" + name + r"\b[^;{]*\{", text)
    if not m:
        sys.exit(f"{path}: class {name} not found (update tests/integration/guard_forwarding.py)")
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def main() -> int:
    root = Path(sys.argv[1])
    guard_path = "core/src/host/plugin_guard.h"
    guard = strip_comments((root / guard_path).read_text())
    missing = []
    checked = 0
    for header, interface, wrapper in PAIRS:
        sdk = class_body(strip_comments((root / header).read_text()), interface, header)
        virtuals = set(re.findall(r"\bvirtual\s+[^;{(]*?\b(\w+)\s*\(", sdk)) - {interface}
        body = class_body(guard, wrapper, guard_path)
        forwarded = set(re.findall(r"\b(\w+)\s*\([^;{]*\)\s*(?:const\s*)?override\b", body, flags=re.S))
        for name in sorted(virtuals - forwarded):
            missing.append(f"{guard_path}: {wrapper} does not override {interface}::{name} ({header})")
        checked += len(virtuals)
    if checked == 0:
        sys.exit("no SDK virtuals found: the header parsing is broken")
    for line in missing:
        print(line)
    if missing:
        return 1
    print(f"{checked} SDK virtuals, each forwarded by its guard")
    return 0


if __name__ == "__main__":
    sys.exit(main())
