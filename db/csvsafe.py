"""Text a spreadsheet would run as a formula: cells starting with one of these are refused
on import and quoted on export (db.importer, db.exporter, manage.py's reports). Its own
module, so a report process can use it without loading the import pipeline."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
