"""What was asked, answered and decided, for heads and admins: case statistics and turnaround,
the audit search, CSV exports and each clinician's list of finished cases. Reads the audit
trail and the consult domain; only the app imports it."""
