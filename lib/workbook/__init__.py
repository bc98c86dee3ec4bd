"""The workbook's tooling: everything that runs, prints or draws the notebooks.

`runner` (execute notebooks with papermill), `parameters` and `ranges` (-p,
checked against the range each notebook's parameters cell declares, before a
kernel starts), `execution`, `progress` and `processes` (workers, the cell each
is running, locks), `staging` (a run's files replace the previous run's only
once it is complete) and `cli` (`python -m lib`), `report`, `summary` and
`findings` (the HTML report, summary.md/json, what the run found), `verdict`
(the line every notebook ends with, decided by named rules), `exercises` (the
checks of the learner's answers), `plots` and `tables` (shared figures and
aligned tables), `playground` (the widgets of notebook 13). Nothing here checks
a gradient: it imports the library, never the other way round.
"""
