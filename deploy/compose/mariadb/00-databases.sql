-- Databases and users of the compose stack. The MariaDB image runs the files
-- of /docker-entrypoint-initdb.d in name order, once, when its data volume is
-- empty. The passwords are demonstration values: change them here, in
-- deploy/compose/puaside.yaml (db_url) and in docker-compose.yml (DBURL of
-- the presence server) together.

-- Kamailio's presence server (deploy/kamailio/presence.cfg, WITH_MYSQL).
CREATE DATABASE IF NOT EXISTS kamailio;
CREATE USER IF NOT EXISTS 'kamailio'@'%' IDENTIFIED BY 'kamailiorw';
GRANT ALL PRIVILEGES ON kamailio.* TO 'kamailio'@'%';

-- puaside applies its own schema at start (or with `puaside migrate`).
CREATE DATABASE IF NOT EXISTS puaside;
CREATE USER IF NOT EXISTS 'puaside'@'%' IDENTIFIED BY 'puaside';
GRANT ALL PRIVILEGES ON puaside.* TO 'puaside'@'%';

FLUSH PRIVILEGES;
