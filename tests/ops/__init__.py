"""Operations: version, logs, backups, the installed package."""
