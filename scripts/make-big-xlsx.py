#!/usr/bin/env python3
"""A 1,000,000-row .xlsx for the memory benchmark (BENCHMARKS.md).
Usage: make-big-xlsx.py OUT.xlsx [ROWS] [--shared-strings]. Needs
`pip install xlsxwriter`. By default strings are written inline
(constant_memory); --shared-strings writes them in the shared-string table
as Excel does (slower, more memory here)."""
import sys

import xlsxwriter

argv = [a for a in sys.argv[1:] if a != "--shared-strings"]
shared = len(argv) < len(sys.argv) - 1
out = argv[0]
rows = int(argv[1]) if len(argv) > 1 else 1_000_000
wb = xlsxwriter.Workbook(out, {"constant_memory": not shared})
ws = wb.add_worksheet("Recipients")
date = wb.add_format({"num_format": "dd/mm/yyyy"})
ws.write_row(0, 0, ["phone", "name", "due_date", "amount"])
for i in range(rows):
    r = i + 1
    ws.write_number(r, 0, 912000000 + i)  # a phone typed as a number
    ws.write_string(r, 1, f"Khách hàng {i}")
    ws.write_number(r, 2, 46357 + i % 30, date)
    ws.write_number(r, 3, 1000 * (i % 500))
wb.close()
