#!/usr/bin/env python3
"""Container healthcheck: exit 0 when the URL answers 200 (slim images have no curl)."""

import sys
import urllib.error
import urllib.request

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8001/readyz"

try:
    with urllib.request.urlopen(URL, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError) as exc:
    sys.stderr.write(f"{URL}: {exc}\n")
    sys.exit(1)
