"""The workbook's tooling: everything that runs, prints or draws the notebooks.

`runner` (execute notebooks with papermill), `parameters` (-p, checked before a
kernel starts), `processes` (workers, locks) and `cli` (`python -m lib`),
`report` and `summary` (the HTML report, summary.md/json), `verdict` (the line
every notebook ends with, decided by named rules), `exercises` (the checks of the
learner's answers), `plots` and `tables` (shared figures and aligned
tables), `playground` (the widgets of notebook 13). Nothing here checks a
gradient: it imports the library, never the other way round.
"""
