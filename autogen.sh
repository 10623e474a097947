#!/bin/sh
exec autoreconf --force --install
