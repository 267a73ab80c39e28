"""SQL persistence (SQLAlchemy 2 async Core): tables, unit of work, repositories, outbox.

Shared by the API and the workers. Works on MariaDB/MySQL (asyncmy, or aiomysql) and SQLite (aiosqlite).
"""
