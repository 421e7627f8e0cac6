"""The popek command line and, later, result loading, tables and grade sheets."""
