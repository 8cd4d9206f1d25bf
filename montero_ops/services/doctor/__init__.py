"""`montero doctor`: the troubleshooting chapter as checks, each with the exact fix.

One module per group of checks; `runner.run_doctor` runs them concurrently, each bounded
by a timeout, and returns a Report of Findings ({id, status, message, fix}).
"""

from montero_ops.services.doctor.finding import Finding, Repair, Report, Status
from montero_ops.services.doctor.runner import CHECKS, apply_repairs, run_doctor

__all__ = ["CHECKS", "Finding", "Repair", "Report", "Status", "apply_repairs", "run_doctor"]
