//! Inside a variable: `accounts+0x38` → `accounts[1]`, `accounts+0x48` →
//! `accounts[1].lock`, from the DWARF type of the variable.
//!
//! [`Variables`] indexes, once per module and only when first needed, every
//! `DW_TAG_variable` whose location is a plain address (`DW_OP_addr`, or
//! `DW_OP_addrx` in DWARF 5): globals and statics, by their link-time start
//! address, which is also their symbol's `st_value`. [`Variables::member_path`]
//! then walks the type down from the variable: through typedefs and
//! qualifiers, into array elements (`[i]`, `[i][j]`) and struct or class
//! members (`.name`; base classes and anonymous members add no name). It stops
//! when the offset left is 0 (the outermost thing at that address names it:
//! `accounts[1].lock`, not `accounts[1].lock.__data.__lock`), at a union (no
//! way to tell which member is meant), at a scalar, or at what it cannot read;
//! what offset is left is written `+0x..`.
//!
//! One exception at offset 0: a struct whose first member is a union, or
//! starts with one through a chain of first members, is named by that union.
//! glibc's `pthread_mutex_t`, `pthread_cond_t`, `pthread_rwlock_t` and
//! `sem_t` are unions, and the address of a struct that starts with a lock is
//! the lock's address: `x.lock` for `struct account { pthread_mutex_t lock;
//! long balance; } x`, `m.n.mutex_n` for a monitor `n` nested in `m`. A first
//! member that is a scalar, an array, a base class or a name reserved for the
//! implementation (`_M_mutex`, `__data`) adds nothing: `accounts[1]`, not
//! `accounts[1].id`; `m`, not `m._M_mutex`, for a `std::mutex`.

use std::collections::HashMap;
use std::sync::Arc;

use gimli::{AttributeValue, DebugInfoOffset, Operation, Reader as _, UnitOffset};

use crate::dwarf::Reader;

type Unit = gimli::Unit<Reader>;

/// How many steps (type hops, array or member descents) a walk may take.
const MAX_STEPS: usize = 64;

/// The DWARF variables of one module, by start address.
pub(crate) struct Variables {
    dwarf: Arc<gimli::Dwarf<Reader>>,
    /// Start address → (the unit, the variable's type in it).
    by_address: HashMap<u64, (DebugInfoOffset, UnitOffset)>,
}

impl Variables {
    /// Indexes the variables of `dwarf`; a unit that does not parse is skipped.
    pub fn index(dwarf: Arc<gimli::Dwarf<Reader>>) -> Self {
        let mut by_address = HashMap::new();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Some(unit_offset) = header.offset().to_debug_info_offset(&header) else {
                continue;
            };
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let _ = index_unit(&dwarf, &unit, unit_offset, &mut by_address);
        }
        Variables { dwarf, by_address }
    }

    /// The path from the start of the variable at `start` to `offset` bytes
    /// into it, like `[1].lock` or `[2].balance+0x4` (or `.lock` at offset 0
    /// of a struct that starts with a lock, see the module docs); `None` when
    /// DWARF knows no such variable or the path would be no more than
    /// `+0xoffset`.
    pub fn member_path(&self, start: u64, offset: u64) -> Option<String> {
        let &(unit_offset, ty) = self.by_address.get(&start)?;
        let header = self.dwarf.debug_info.header_from_offset(unit_offset).ok()?;
        let unit = self.dwarf.unit(header).ok()?;
        let walk = Walk {
            dwarf: &self.dwarf,
            unit: &unit,
        };
        walk.path(ty, offset)
    }
}

/// Adds the plainly located variables of one unit to `out`.
fn index_unit(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &Unit,
    unit_offset: DebugInfoOffset,
    out: &mut HashMap<u64, (DebugInfoOffset, UnitOffset)>,
) -> gimli::Result<()> {
    let mut cursor = unit.entries();
    while let Some(entry) = cursor.next_dfs()? {
        if entry.tag() != gimli::DW_TAG_variable {
            continue;
        }
        let Some(AttributeValue::Exprloc(expr)) = entry.attr_value(gimli::DW_AT_location) else {
            continue;
        };
        let mut ops = expr.operations(unit.encoding());
        let address = match ops.next() {
            Ok(Some(Operation::Address { address })) => address,
            Ok(Some(Operation::AddressIndex { index })) => dwarf.address(unit, index)?,
            _ => continue,
        };
        if !matches!(ops.next(), Ok(None)) {
            continue; // a computed location (TLS, pieces): not a plain global
        }
        // A definition outside its class or declaration carries the type on
        // the declaration it points to.
        let ty = type_of(entry).or_else(|| {
            let Some(AttributeValue::UnitRef(decl)) = entry.attr_value(gimli::DW_AT_specification)
            else {
                return None;
            };
            type_of(&unit.entry(decl).ok()?)
        });
        if let Some(ty) = ty {
            out.entry(address).or_insert((unit_offset, ty));
        }
    }
    Ok(())
}

/// The `DW_AT_type` of `entry`, when it is in the same unit.
fn type_of(entry: &gimli::DebuggingInformationEntry<Reader>) -> Option<UnitOffset> {
    match entry.attr_value(gimli::DW_AT_type)? {
        AttributeValue::UnitRef(ty) => Some(ty),
        _ => None,
    }
}

/// The number of elements of an array with dimensions `dims` (1 for none).
fn count(dims: &[Option<u64>]) -> Option<u64> {
    dims.iter().try_fold(1u64, |n, d| n.checked_mul((*d)?))
}

/// One member of a struct or class.
struct Member {
    name: Option<String>,
    location: u64,
    ty: UnitOffset,
    /// A `DW_TAG_inheritance`: a base class, not a data member.
    base: bool,
}

/// Whether `name` is reserved for the implementation (`__x`, `_X`): a library
/// type's internals, not something a user wrote.
fn reserved(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next() == Some('_')
        && chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_uppercase())
}

/// Type lookups within one unit.
struct Walk<'a> {
    dwarf: &'a gimli::Dwarf<Reader>,
    unit: &'a Unit,
}

impl Walk<'_> {
    /// See [`Variables::member_path`].
    fn path(&self, mut ty: UnitOffset, mut offset: u64) -> Option<String> {
        let mut path = String::new();
        let mut steps = 0;
        while offset > 0 && steps < MAX_STEPS {
            steps += 1;
            ty = self.strip(ty)?;
            let entry = self.unit.entry(ty).ok()?;
            match entry.tag() {
                gimli::DW_TAG_array_type => {
                    let element = type_of(&entry)?;
                    let element_size = self.size(element).filter(|&s| s > 0)?;
                    let dims = self.dimensions(ty)?;
                    for i in 1..=dims.len() {
                        let stride = element_size.checked_mul(count(&dims[i..])?)?;
                        path.push_str(&format!("[{}]", offset / stride));
                        offset %= stride;
                    }
                    ty = element;
                }
                gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type => {
                    let member = self.member_at(ty, offset)?;
                    if let Some(name) = member.name {
                        path.push('.');
                        path.push_str(&name);
                    }
                    offset -= member.location;
                    ty = member.ty;
                }
                _ => break,
            }
        }
        if offset == 0 {
            if let Some(lead) = self.leading_union(ty) {
                path.push_str(&lead);
            }
        }
        if path.is_empty() {
            return None;
        }
        if offset > 0 {
            path.push_str(&format!("+{offset:#x}"));
        }
        Some(path)
    }

    /// The member path (`.lock`, `.n.mutex_n`) from the start of the struct
    /// `ty` to a union that starts it, through named, unreserved first data
    /// members that are structs; `None` when `ty` does not start with a union
    /// that way.
    fn leading_union(&self, mut ty: UnitOffset) -> Option<String> {
        let mut path = String::new();
        for _ in 0..MAX_STEPS {
            ty = self.strip(ty)?;
            match self.unit.entry(ty).ok()?.tag() {
                gimli::DW_TAG_union_type => return (!path.is_empty()).then_some(path),
                gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type => {}
                _ => return None,
            }
            let member = self.member_at(ty, 0)?;
            if member.base || member.location != 0 {
                return None;
            }
            // An anonymous member adds no name, as in `path`.
            if let Some(name) = member.name {
                if reserved(&name) {
                    return None;
                }
                path.push('.');
                path.push_str(&name);
            }
            ty = member.ty;
        }
        None
    }

    /// `ty` without typedefs and qualifiers.
    fn strip(&self, mut ty: UnitOffset) -> Option<UnitOffset> {
        for _ in 0..MAX_STEPS {
            let entry = self.unit.entry(ty).ok()?;
            match entry.tag() {
                gimli::DW_TAG_typedef
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_restrict_type
                | gimli::DW_TAG_atomic_type => ty = type_of(&entry)?,
                _ => return Some(ty),
            }
        }
        None
    }

    /// The size in bytes of a value of type `ty`.
    fn size(&self, ty: UnitOffset) -> Option<u64> {
        let ty = self.strip(ty)?;
        let entry = self.unit.entry(ty).ok()?;
        if let Some(size) = entry.attr_value(gimli::DW_AT_byte_size) {
            return size.udata_value();
        }
        if entry.tag() == gimli::DW_TAG_array_type {
            let count = count(&self.dimensions(ty)?)?;
            return self.size(type_of(&entry)?)?.checked_mul(count);
        }
        None
    }

    /// The element count of each dimension of an array type, outermost first
    /// (`None` for an unknown count, like `int a[]`).
    fn dimensions(&self, array: UnitOffset) -> Option<Vec<Option<u64>>> {
        let mut dims = Vec::new();
        let mut tree = self.unit.entries_tree(Some(array)).ok()?;
        let mut children = tree.root().ok()?.children();
        while let Some(child) = children.next().ok()? {
            let entry = child.entry();
            if entry.tag() != gimli::DW_TAG_subrange_type {
                continue;
            }
            let lower = match entry.attr_value(gimli::DW_AT_lower_bound) {
                Some(v) => v.udata_value()?,
                None => 0,
            };
            let count = entry
                .attr_value(gimli::DW_AT_count)
                .and_then(|v| v.udata_value())
                .or_else(|| {
                    // Unsigned: `DW_FORM_data1` 199 is not -57. An unknown
                    // bound is absent, an expression, or -1.
                    let upper = entry.attr_value(gimli::DW_AT_upper_bound)?;
                    upper.udata_value()?.checked_add(1)?.checked_sub(lower)
                });
            dims.push(count);
        }
        (!dims.is_empty()).then_some(dims)
    }

    /// The member of the struct or class `ty` that contains `offset`; else a
    /// member of unknown size (a flexible array) that starts before it.
    fn member_at(&self, ty: UnitOffset, offset: u64) -> Option<Member> {
        let mut open = None;
        let mut tree = self.unit.entries_tree(Some(ty)).ok()?;
        let mut children = tree.root().ok()?.children();
        while let Some(child) = children.next().ok()? {
            let entry = child.entry();
            let tag = entry.tag();
            let is_field = tag == gimli::DW_TAG_member || tag == gimli::DW_TAG_inheritance;
            if !is_field || entry.attr_value(gimli::DW_AT_bit_size).is_some() {
                continue;
            }
            let location = match entry.attr_value(gimli::DW_AT_data_member_location) {
                Some(v) => v.udata_value(),
                None => Some(0), // a union-like member, or a lone first field
            };
            let (Some(location), Some(member_ty)) = (location, type_of(entry)) else {
                continue;
            };
            if location > offset {
                continue;
            }
            let size = self.size(member_ty);
            if size.is_some_and(|size| offset - location >= size) {
                continue;
            }
            let name = match (tag, entry.attr_value(gimli::DW_AT_name)) {
                (gimli::DW_TAG_member, Some(name)) => self.string(name),
                _ => None,
            };
            let member = Member {
                name,
                location,
                ty: member_ty,
                base: tag == gimli::DW_TAG_inheritance,
            };
            if size.is_some() {
                return Some(member);
            }
            open = Some(member);
        }
        open
    }

    fn string(&self, value: AttributeValue<Reader>) -> Option<String> {
        let name = self.dwarf.attr_string(self.unit, value).ok()?;
        Some(name.to_string_lossy().ok()?.into_owned())
    }
}
