#!/bin/sh
# Sets up what the user-management jar's own configuration expects (SeUniVr/RESTgym@56a9300
# apis/user-management/classes/application.properties: jdbc MySQL at localhost:3306, database
# users, root/root, spring.datasource.initialization-mode=always: the service loads its own schema
# and data, so nothing is loaded here). Runs after mysqld opened its port (SIDECARS after_start), as
# root over the server's socket; mysqld runs with --skip-name-resolve, so TCP logins from
# 127.0.0.1 use the account made here. Any failing statement fails the start.
set -eu
mysql -uroot <<'SQLTEXT'
CREATE DATABASE IF NOT EXISTS users;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY 'root';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQLTEXT
mysql -uroot -proot -h127.0.0.1 -P3306 users -e "SELECT 1" >/dev/null
echo "db-init: root/root reaches users on 127.0.0.1:3306"
