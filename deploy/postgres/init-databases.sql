-- Run once by the postgres image on an empty volume: one database per service that needs one.
CREATE DATABASE consent;
CREATE DATABASE audit;
