"""The batch report (``python -m remote_runner report``): the document (document), the numbers in its
tables (tables) and its figures (figures). Part of :mod:`remote_runner.analysis` and under its rules.
"""
