# nbgrader configuration of the course. `python tools/nbgrader_course.py COURSE_DIR` copies it into a new
# course directory, beside `source/` (one assignment per chapter); run nbgrader from that directory.
# See TEACHING.md for the whole cycle: generate_assignment, release, collect, autograde, feedback.
c = get_config()  # noqa: F821 (nbgrader provides get_config when it loads this file)

c.CourseDirectory.course_id = "dl-course"

# A cell may run this long when grading. nbgrader's default, 30 s, stops training cells on a busy server:
# the longest cell of chapters 00-09 took 40 s on a loaded 2-core machine (about 10 s when quiet).
c.Execute.timeout = 600

# The exercises mark answers with `### BEGIN SOLUTION` / `### END SOLUTION` (nbgrader's defaults) and the
# student version replaces them with this stub, as tools/student_version.py does.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
