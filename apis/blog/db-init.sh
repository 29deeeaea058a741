#!/bin/sh
# Sets up what the blog jar's own configuration expects (SeUniVr/RESTgym@56a9300
# apis/blog/classes/application.properties: jdbc MySQL at localhost:3307, database blogapi, user
# blog/blog) and loads /api/database/blogapi.sql into that database once. Runs after mysqld opened
# its port (supervisor SIDECARS after_start), as root over the server's socket. Any failing statement
# fails the start, so a broken database is named by the preflight instead of hidden.
set -eu
SQL=/api/database/blogapi.sql
[ -s "$SQL" ] || { echo "db-init: $SQL is missing or empty" >&2; exit 1; }
mysql -uroot <<'SQLTEXT'
CREATE DATABASE IF NOT EXISTS blogapi;
CREATE USER IF NOT EXISTS 'blog'@'localhost' IDENTIFIED BY 'blog';
CREATE USER IF NOT EXISTS 'blog'@'127.0.0.1' IDENTIFIED BY 'blog';
GRANT ALL PRIVILEGES ON blogapi.* TO 'blog'@'localhost';
GRANT ALL PRIVILEGES ON blogapi.* TO 'blog'@'127.0.0.1';
FLUSH PRIVILEGES;
SQLTEXT
tables=$(mysql -uroot -N -B -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'blogapi'")
if [ "$tables" = "0" ]; then
  mysql -uroot blogapi < "$SQL"
  echo "db-init: loaded $SQL into blogapi"
else
  echo "db-init: blogapi already holds $tables tables (loaded when the image was built)"
fi
mysql -ublog -pblog -h127.0.0.1 -P3307 blogapi -e "SELECT 1" >/dev/null
echo "db-init: blog/blog reaches blogapi on 127.0.0.1:3307"
