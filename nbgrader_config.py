"""nbgrader settings of the course (read by nbgrader's own commands and by coursekit).

The gradebook is SQLite by default; any SQLAlchemy URL works (e.g. postgresql://user@host/dlt),
or set DB=... on `make grade`. A relative sqlite path is relative to this folder.
"""

c = get_config()  # noqa: F821 -- provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = "dlt"
c.CourseDirectory.root = "grading"
c.CourseDirectory.db_url = "sqlite:///grading/gradebook.db"
c.ExecutePreprocessor.timeout = 600
c.ExportPlugin.to = "grading/nbgrader_grades.csv"  # `nbgrader export` (run here): not into the repository's tree
