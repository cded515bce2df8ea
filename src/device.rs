//! Push-notification devices registered to a user (MirrorFly's device fields, Sendbird's
//! per-type limit with the oldest evicted).

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::user::check_text;

/// The platform of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    /// A browser.
    Web,
    /// Apple iOS (APNs).
    Ios,
    /// Android (FCM).
    Android,
}

/// The push environment (MirrorFly's `mode`: 0 production, 1 sandbox).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// Production push gateway.
    #[default]
    Production,
    /// Sandbox / debug push gateway.
    Sandbox,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Platform.
    pub device_type: DeviceType,
    /// Push token; unique across all users (it identifies one app install).
    pub push_token: String,
    /// VoIP push token (iOS call notifications).
    pub voip_push_token: Option<String>,
    /// Operating system version.
    pub os_version: Option<String>,
    /// Push environment.
    pub mode: PushMode,
    /// When the device was (last) registered, milliseconds since the Unix epoch.
    pub added_at_ms: i64,
}

/// A device to register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// Platform.
    pub device_type: DeviceType,
    /// Push token, 1..=`push_token_max_chars`.
    pub push_token: String,
    /// VoIP push token.
    #[serde(default)]
    pub voip_push_token: Option<String>,
    /// OS version.
    #[serde(default)]
    pub os_version: Option<String>,
    /// Push environment.
    #[serde(default)]
    pub mode: PushMode,
}

impl NewDevice {
    /// A production device of `device_type` with `push_token`.
    pub fn new(device_type: DeviceType, push_token: impl Into<String>) -> NewDevice {
        NewDevice {
            device_type,
            push_token: push_token.into(),
            voip_push_token: None,
            os_version: None,
            mode: PushMode::Production,
        }
    }

    /// Checks every field against the configured limits.
    pub(crate) fn validate(&self, c: &Config) -> Result<()> {
        if self.push_token.is_empty() {
            return Err(Error::new(ErrorKind::InvalidField, "push_token is empty"));
        }
        check_text("push_token", &self.push_token, c.push_token_max_chars)?;
        if let Some(v) = &self.voip_push_token {
            check_text("voip_push_token", v, c.push_token_max_chars)?;
        }
        if let Some(v) = &self.os_version {
            check_text("os_version", v, c.os_version_max_chars)?;
        }
        Ok(())
    }

    pub(crate) fn into_device(self, now_ms: i64) -> Device {
        Device {
            device_type: self.device_type,
            push_token: self.push_token,
            voip_push_token: self.voip_push_token,
            os_version: self.os_version,
            mode: self.mode,
            added_at_ms: now_ms,
        }
    }
}

/// The result of registering a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAdded {
    /// The device as stored.
    pub device: Device,
    /// The oldest device of the same type, removed because the per-type limit was reached.
    pub evicted: Option<Device>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_limits_at_edges() {
        let c = Config::default();
        let mut d = NewDevice::new(DeviceType::Ios, "t".repeat(1024));
        assert!(d.validate(&c).is_ok());
        d.push_token.push('t');
        assert_eq!(d.validate(&c).unwrap_err().kind(), ErrorKind::FieldTooLong);
        d.push_token.clear();
        assert_eq!(d.validate(&c).unwrap_err().kind(), ErrorKind::InvalidField);
        let mut d = NewDevice::new(DeviceType::Web, "x");
        d.os_version = Some("9".repeat(64));
        assert!(d.validate(&c).is_ok());
        d.os_version = Some("9".repeat(65));
        assert!(d.validate(&c).is_err());
    }

    #[test]
    fn json_shape() {
        let d: NewDevice =
            serde_json::from_str(r#"{"device_type":"android","push_token":"p","mode":"sandbox"}"#)
                .unwrap();
        assert_eq!(d.device_type, DeviceType::Android);
        assert_eq!(d.mode, PushMode::Sandbox);
        assert!(
            serde_json::from_str::<NewDevice>(r#"{"device_type":"tv","push_token":"p"}"#).is_err()
        );
    }
}
